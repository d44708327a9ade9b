"""D4PG on a replay learner: a deterministic policy and a categorical distributional critic,
both with Polyak targets; the critic learns the n-step return distribution projected onto
its support, the policy the critic's mean."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from mpirl.algos.api import LearnerContext
from mpirl.algos.d4pg.loss import categorical_projection, distributional_critic_loss, policy_loss
from mpirl.algos.offpolicy.continuous_trainer import ActorCriticReplayTrainer


class D4PGTrainer(ActorCriticReplayTrainer):
    stat_keys = ("value_loss", "policy_loss", "q_mean", "q_max", "grad_norm")
    critic_members = 1
    policy_target = True

    def __init__(self, ctx: LearnerContext):
        self.critic_outputs = ctx.cfg.atoms
        super().__init__(ctx)
        cfg = self.cfg
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.atoms, device=self.device)

    def losses(self, b: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        obs = b["obs"]
        with torch.no_grad():
            next_actions = torch.tanh(self.target_policy(b["next_obs"]))
            next_probs = F.softmax(self.critic_target(b["next_obs"], next_actions)[0], dim=-1)
            target_probs = categorical_projection(next_probs, b["returns"], b["discounts"],
                                                  self.support)
        logits = self.critics(obs, b["actions"])[0]
        value_loss, per_sample = distributional_critic_loss(logits, target_probs, b["weights"])
        logits_pi = self.critics(obs, torch.tanh(self.policy(obs)), frozen=True)[0]
        pi_loss = policy_loss(logits_pi, self.support)
        q = (F.softmax(logits.detach(), dim=-1) * self.support).sum(-1)
        stats = {"value_loss": value_loss.detach(), "policy_loss": pi_loss.detach(),
                 "q_mean": q.mean(), "q_max": q.max()}
        return value_loss + pi_loss, stats, per_sample
