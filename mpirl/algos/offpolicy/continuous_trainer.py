"""The learner of the off-policy continuous-control algorithms (SAC, TD3, D4PG):
``ActorCriticReplayTrainer`` (``mpirl.algos.offpolicy.continuous`` describes the design)."""
from __future__ import annotations

import numpy as np
import torch

from mpirl.algos.api import LearnerContext
from mpirl.algos.offpolicy.trainer import ReplayTrainer
from mpirl.algos.optim import optimizer_over
from mpirl.nets.continuous import Critics
from mpirl.runtime import rng as streams


def _flat_optimizer(cfg, values: torch.Tensor, grad: torch.Tensor):
    """--optimizer over one flat slice of parameters whose gradient is ``grad``: one fused
    kernel per step. Adam with torch's own epsilon (1e-8), as these algorithms' reference
    implementations use it."""
    param = torch.nn.Parameter(values, requires_grad=False)
    param.grad = grad
    return optimizer_over(cfg, param, adam_eps=1e-8)


class ActorCriticReplayTrainer(ReplayTrainer):
    """A replay learner for a policy and ``critic_members`` critics with ``critic_outputs``
    outputs each, their targets (the policy's with ``policy_target``), and any
    ``extra_parameters`` (SAC's temperature), each network with its own optimizer.

    A subclass computes its losses in ``losses(batch)`` and returns them summed with its
    statistics; this class runs the rest of the update: one backward, one allreduce over all
    gradients, clipping each network's gradient to --max-grad-norm, the optimizer steps that
    ``steps()`` names and the target updates."""

    critic_members = 2
    critic_outputs = 1
    policy_target = False

    def __init__(self, ctx: LearnerContext):
        from mpirl.comm import FlatParameters  # a learner's: MPI is there
        super().__init__(ctx)
        cfg, device = self.cfg, ctx.device
        self.device = device
        self.policy = ctx.policy
        streams.seed_initial_weights(cfg.seed + 1)  # the same critics on every learner
        self.critics = Critics(ctx.env, list(cfg.hidden_sizes), cfg.activation,
                               self.critic_members, self.critic_outputs).to(device)
        self.critic_flat = FlatParameters(self.critics)
        self.critic_target = Critics(ctx.env, list(cfg.hidden_sizes), cfg.activation,
                                     self.critic_members, self.critic_outputs).to(device)
        self.critic_target_flat = FlatParameters(self.critic_target)
        self.critic_target_flat.vector.copy_(self.critic_flat.vector)
        self.critic_target.requires_grad_(False)
        self.targets = [(self.critic_target_flat.vector, self.critic_flat.vector)]
        self.policy_vector = ctx.policy_params.vector
        if self.policy_target:
            self.target_policy = ctx.network()
            self.target_policy.requires_grad_(False)
            self.target_policy_flat = FlatParameters(self.target_policy)
            self.target_policy_flat.vector.copy_(self.policy_vector)
            self.targets.append((self.target_policy_flat.vector, self.policy_vector))
        extras = self.extra_parameters()
        self.averager = ctx.averager([*self.policy.parameters(), *self.critics.parameters(),
                                      *extras], share=self.batch / cfg.batch_size)
        flat = self.averager.flat
        n_policy, n_critic = self.policy_vector.numel(), self.critic_flat.vector.numel()
        self.slices = {"policy": slice(0, n_policy),
                       "critic": slice(n_policy, n_policy + n_critic)}
        self.opt = {"policy": _flat_optimizer(cfg, self.policy_vector, flat[self.slices["policy"]]),
                    "critic": _flat_optimizer(cfg, self.critic_flat.vector,
                                              flat[self.slices["critic"]])}
        offset = n_policy + n_critic
        for i, p in enumerate(extras):
            self.slices[f"extra{i}"] = slice(offset, offset + p.numel())
            self.opt[f"extra{i}"] = _flat_optimizer(cfg, p.data, flat[self.slices[f"extra{i}"]])
            offset += p.numel()
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(ctx.rng("noise").integers(2 ** 62)))

    # ------------------------------------------------------------------ for subclasses
    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters besides the networks', averaged and stepped alike."""
        return []

    def noise(self, *shape: int) -> torch.Tensor:
        """Standard normal noise from this learner's own stream (checkpointed)."""
        return torch.randn(*shape, generator=self.generator, device=self.device)

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """The summed loss of this update, its statistics (Python floats or 0-d tensors) and
        each sample's absolute TD error (or other priority)."""
        raise NotImplementedError

    def steps(self) -> tuple[str, ...]:
        """The optimizers that step after this update (all by default)."""
        return tuple(self.opt)

    def update_targets(self) -> bool:
        """Whether the targets follow after this update."""
        return True

    # ------------------------------------------------------------------ the update
    def _batch(self, sample) -> dict[str, torch.Tensor]:
        def t(a):
            return torch.from_numpy(a).to(self.device, non_blocking=True)
        return {"obs": t(sample.obs), "actions": t(sample.actions), "returns": t(sample.returns),
                "next_obs": t(sample.next_obs), "discounts": t(sample.discounts),
                "weights": t(sample.weights) if self.cfg.prioritized else None}

    def update(self, sample, weighted: bool) -> dict:
        cfg, averager = self.cfg, self.averager
        averager.announce()
        loss, stats, priorities = self.losses(self._batch(sample))
        averager.zero_grad()
        averager.backward(loss)
        averager.average()
        grad_norm = self._clip(cfg.max_grad_norm)
        skipped = not averager.finite
        if not skipped:
            for name in self.steps():
                self.opt[name].step()
            if self.update_targets():
                with torch.no_grad():
                    for target, online in self.targets:
                        target.lerp_(online, cfg.tau)
            averager.stepped()  # --sync average: every K updates, all of it is averaged
        names = list(stats)
        values = torch.stack([torch.as_tensor(stats[k], dtype=torch.float32,
                                              device=self.device) for k in names]).tolist()
        out = dict(zip(names, values))
        out.update(skipped=skipped, grad_norm=grad_norm)
        if cfg.prioritized:
            out["td"] = priorities.cpu().numpy()
        return out

    def _clip(self, max_norm: float) -> float:
        """Clip each network's averaged gradient to ``max_norm`` (0: not at all); returns
        the norm of all of them before; a norm that is not finite is the averager's to handle
        (``GradientAverager.nonfinite``)."""
        flat = self.averager.flat
        norms = torch.stack([torch.linalg.vector_norm(flat[s]) for s in self.slices.values()])
        values = norms.tolist()
        total = float(np.sqrt(np.sum(np.square(values))))
        if not np.isfinite(total):
            self.averager.nonfinite()
        elif max_norm > 0:
            for s, norm in zip(self.slices.values(), values):
                if norm > max_norm:
                    flat[s].mul_(max_norm / (norm + 1e-6))
        return total

    # ------------------------------------------------------------------ checkpoints
    def optimizers(self) -> list:
        return list(self.opt.values())

    def shared_tensors(self) -> list[torch.Tensor]:
        """The target networks: --sync average averages them with the trained networks."""
        return [target for target, _ in self.targets]

    def state_dict(self) -> dict:
        state = {**super().state_dict(),
                 "critics": self.critic_flat.vector.detach().cpu().clone(),
                 "optimizers": {k: o.state_dict() for k, o in self.opt.items()},
                 "targets": [t.detach().cpu().clone() for t, _ in self.targets]}
        extras = self.extra_parameters()
        if extras:
            state["extras"] = [p.detach().cpu().clone() for p in extras]
        return state

    def own_state_dict(self) -> dict:
        return {**super().own_state_dict(), "noise": self.generator.get_state()}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            with torch.no_grad():
                self.critic_flat.vector.copy_(shared["critics"])
                for (target, _), saved in zip(self.targets, shared["targets"]):
                    target.copy_(saved)
                for p, saved in zip(self.extra_parameters(), shared.get("extras", [])):
                    p.copy_(saved)
            for k, o in self.opt.items():
                o.load_state_dict(shared["optimizers"][k])
        if own and "noise" in own:  # (saved on another device type: reseeded from it)
            streams.restore_torch_generator(self.generator, own["noise"])
