"""TD3 on a replay learner: a deterministic policy and its target, twin critics and their
targets; the policy and all targets move every --policy-delay updates, the critics every
update."""
from __future__ import annotations

import torch

from mpirl.algos.api import LearnerContext
from mpirl.algos.offpolicy.continuous_trainer import ActorCriticReplayTrainer
from mpirl.algos.td3.loss import critic_loss, policy_loss, smoothed_target_actions, td3_targets


class TD3Trainer(ActorCriticReplayTrainer):
    stat_keys = ("value_loss", "policy_loss", "q_mean", "q_max", "td_abs", "grad_norm")
    policy_target = True

    def __init__(self, ctx: LearnerContext):
        super().__init__(ctx)
        self._policy_loss = torch.zeros((), device=self.device)  # the last one, for the logs

    def _policy_turn(self) -> bool:
        """Whether the update being made moves the policy and the targets (counted in
        applied updates, so every learner agrees)."""
        return (self.updates + 1) % self.cfg.policy_delay == 0

    def losses(self, b: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        cfg, obs = self.cfg, b["obs"]
        with torch.no_grad():
            next_actions = smoothed_target_actions(
                torch.tanh(self.target_policy(b["next_obs"])),
                self.noise(obs.shape[0], self.policy.n_actions), cfg.target_noise,
                cfg.target_noise_clip)
            next_q = self.critic_target(b["next_obs"], next_actions).squeeze(-1)
            targets = td3_targets(next_q, b["returns"], b["discounts"])
        q = self.critics(obs, b["actions"]).squeeze(-1)
        loss = value_loss = critic_loss(q, targets, b["weights"])
        if self._policy_turn():
            q_pi = self.critics(obs, torch.tanh(self.policy(obs)), frozen=True,
                                members=1).squeeze(-1)
            pi_loss = policy_loss(q_pi)
            loss = loss + pi_loss
            self._policy_loss = pi_loss.detach()
        q = q.detach()
        td = (targets - q).abs().mean(0)
        stats = {"value_loss": value_loss.detach(), "policy_loss": self._policy_loss,
                 "q_mean": q.mean(), "q_max": q.max(), "td_abs": td.mean()}
        return loss, stats, td

    def steps(self) -> tuple[str, ...]:
        return ("critic", "policy") if self._policy_turn() else ("critic",)

    def update_targets(self) -> bool:
        return self._policy_turn()

    # the last policy loss is reported on the updates between policy updates, a resumed run too
    def state_dict(self) -> dict:
        return {**super().state_dict(), "policy_loss": float(self._policy_loss)}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared and "policy_loss" in shared:
            self._policy_loss = torch.tensor(shared["policy_loss"], device=self.device)
