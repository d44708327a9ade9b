"""The run configuration: declaring options (``fields``), the Config of a run (``schema``), and
where values come from (``sources``: flags, config files, presets, a resumed run)."""
