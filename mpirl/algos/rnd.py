"""Exploration by random network distillation (Burda et al. 2018, arXiv:1810.12894) for PPO and
IMPALA: ``--intrinsic rnd``.

The intrinsic reward of a step is the predictor's error on its next observation
(``mpirl.nets.rnd``), which stays high where the agent has rarely been. On the learners, each
iteration:

1. RND's observation statistics take in the batch's next observations (and, in the first
   iteration, those of ``--rnd-init-steps`` random-action steps each actor took before its
   first rollout), merged over the learners in rank order as the on-policy observation
   statistics are (``mpirl.algos.normalization``): equal on every learner, and equal to those
   of one process that saw all the data;
2. the intrinsic rewards are the predictor's errors on the next observations (normalized by
   those statistics, clipped to +-5);
3. they are divided by the std of the discounted intrinsic return of each env stream, a
   return that runs on across episode ends (intrinsic rewards are non-episodic), its
   statistics merged the same way (and weighed down by ``--int-return-decay`` each
   iteration).

The policy carries two value heads, extrinsic and intrinsic, with their own discounts
(``--gamma`` and ``--int-gamma``); the update combines the two advantages as ``--ext-coef``
x extrinsic + ``--int-coef`` x intrinsic, and trains the predictor on ``--rnd-update-proportion``
of each minibatch, its gradient in the same allreduce as the policy's. The learners' part is
``mpirl.algos.rnd_learning`` (``RND``, ``learner_parts``); this module is what acting ranks
and the config need, without torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpirl.acting.envs import EnvSpec, is_image
from mpirl.acting.messages import Fields, PackedArrays
from mpirl.algos.moments import Moments
from mpirl.config.fields import option
from mpirl.runtime import timing

OBS_CLIP = 5.0
INIT_FIELD = "rnd_init"  # the moments of an actor's random-action steps, in its messages
SOURCE_FIELD = "rnd_source"  # which acting rank sent a message: its env streams' returns


def rnd_input_shape(spec: EnvSpec) -> tuple[int, ...]:
    """The shape of what the networks read: the newest frame of an image stack (1, H, W), else
    the observation."""
    if is_image(spec):
        return (1, *spec.obs_shape[1:])
    return tuple(spec.obs_shape)


def rnd_input(spec: EnvSpec, obs: np.ndarray) -> np.ndarray:
    """The part of a batch of observations the networks read (a view where possible)."""
    return obs[:, -1:] if is_image(spec) else obs


@dataclass
class IntrinsicOptions:
    """intrinsic rewards (RND)"""

    intrinsic: str = option(
        "none", "Intrinsic rewards: rnd = random network distillation (a second value head; "
        "--gamma stays the extrinsic discount, for which the RND papers use 0.999 on sparse "
        "game scores).", choices=("none", "rnd"))
    int_gamma: float = option(0.99, "RND: discount of the intrinsic return (non-episodic).",
                              bounds="[0, 1]")
    ext_coef: float = option(2.0, "RND: weight of the extrinsic advantages.",
                             bounds="[0, inf)")
    int_coef: float = option(1.0, "RND: weight of the intrinsic advantages.",
                             bounds="[0, inf)")
    rnd_update_proportion: float = option(
        0.25, "RND: share of each minibatch the predictor trains on.", bounds="(0, 1]")
    int_return_decay: float = option(
        1.0, "RND: each iteration, the intrinsic-return statistics gathered before it weigh "
        "this much less. 1 = all history alike (Burda et al.); lower follows intrinsic rewards "
        "that fall by orders of magnitude as the predictor learns (small observations), which "
        "all-history statistics would keep scaling down to nothing.", bounds="[0, 1]")
    rnd_init_steps: int = option(
        128, "RND: random-action steps per env, before the first rollout, whose observations "
        "start RND's normalization statistics (not counted in --total-steps).",
        bounds="[0, inf)")


def active(cfg) -> bool:
    return getattr(cfg, "intrinsic", "none") == "rnd"


# ---------------------------------------------------------------------- acting
def message_fields(cfg, env: EnvSpec) -> Fields:
    """The fields RND adds to a rollout message: the moments of the observations of the
    actor's random-action steps (in its first message; empty, count 0, after), and the
    sender's acting-rank number."""
    if not active(cfg):
        return {}
    size = Moments(rnd_input_shape(env)).size()
    return {INIT_FIELD: ((size,), np.dtype(np.float64)),
            SOURCE_FIELD: ((1,), np.dtype(np.int64))}


class RandomStartCollector:
    """A rollout collector whose first ``collect`` is preceded by ``steps`` random-action
    steps of every env, their observations' moments sent in ``rnd_init``. Episodes of those
    steps are not reported; the envs go on from where the random steps left them. Every
    message names its sender (``index``, the acting rank's number) in ``rnd_source``."""

    def __init__(self, inner, spec: EnvSpec, steps: int, rng: np.random.Generator,
                 index: int = 0):
        self.inner, self.spec, self.steps, self.rng = inner, spec, steps, rng
        self.index = index
        self.envs = inner.envs
        self.started = steps == 0

    def _random_actions(self) -> np.ndarray:
        spec, n = self.spec, self.envs.n
        if spec.discrete:
            return self.rng.integers(0, spec.n_actions, size=n)
        return self.rng.uniform(spec.action_low, spec.action_high,
                                size=(n, *spec.action_shape)).astype(np.float32)

    def _random_steps(self) -> Moments:
        shape = rnd_input_shape(self.spec)
        seen = Moments(shape)
        for _ in range(self.steps):
            self.envs.step(self._random_actions())
            seen.merge(Moments.of(rnd_input(self.spec, self.envs.obs), shape))
        self.envs.pop_episodes()
        return seen

    def collect(self, out: PackedArrays, progress: float = 0.0) -> None:
        init = Moments(rnd_input_shape(self.spec))
        if not self.started:
            timing.switch("env")
            init = self._random_steps()
            self.started = True
        out[INIT_FIELD][:] = init.pack()
        out[SOURCE_FIELD][0] = self.index
        self.inner.collect(out, progress)

    def state_dict(self) -> dict:
        return {**self.inner.state_dict(), "rnd_started": self.started}

    def load_state_dict(self, state: dict, epoch: int) -> int:
        self.started = state.get("rnd_started", True)
        return self.inner.load_state_dict(state, epoch)


def startup(setup) -> list[str]:
    """The start-up line that describes RND, when it is on."""
    cfg = setup.cfg
    if not active(cfg):
        return []
    from mpirl.nets.rnd import RNDNetworks
    nets = RNDNetworks(setup.spec)
    count = [sum(p.numel() for p in part.parameters()) for part in (nets.predictor, nets.target)]
    shape = "x".join(str(d) for d in rnd_input_shape(setup.spec))
    what = "the newest frame" if is_image(setup.spec) else "the observation"
    return [f"mpirl: intrinsic rewards: RND on {what} ({shape}), predictor {count[0]:,} "
            f"parameters trained on {cfg.rnd_update_proportion:g} of each minibatch, fixed "
            f"target {count[1]:,}; ext/int discounts {cfg.gamma:g}/{cfg.int_gamma:g}, "
            f"advantage weights {cfg.ext_coef:g}/{cfg.int_coef:g}; statistics start from "
            f"{cfg.rnd_init_steps:,} random steps per env (not counted in the budget)"]


def collector(ctx, inner):
    """``inner`` (a rollout collector), preceded by RND's random-action steps when RND is on."""
    if not active(ctx.cfg):
        return inner
    return RandomStartCollector(inner, ctx.env, ctx.cfg.rnd_init_steps, ctx.rng, ctx.index)
