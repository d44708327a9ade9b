"""Networks the algorithms train: MLP and Nature-CNN actor-critics and their building blocks."""
