"""SAC on a replay learner: a squashed Gaussian policy, twin critics and their Polyak
targets, and the temperature alpha, tuned toward a target entropy unless held fixed."""
from __future__ import annotations

import math

import torch

from mpirl.algos.api import LearnerContext
from mpirl.algos.offpolicy.continuous_trainer import ActorCriticReplayTrainer
from mpirl.algos.sac.loss import (critic_loss, policy_loss, soft_q_targets, squashed_sample,
                                  temperature_loss)


class SACTrainer(ActorCriticReplayTrainer):
    stat_keys = ("value_loss", "policy_loss", "q_mean", "q_max", "td_abs", "grad_norm",
                 "entropy", "ent_coef")

    def __init__(self, ctx: LearnerContext):
        cfg = ctx.cfg
        self.tuned = not cfg.fixed_ent_coef
        self.log_alpha = torch.nn.Parameter(
            torch.full((1,), math.log(cfg.ent_coef) if cfg.ent_coef > 0 else -math.inf,
                       device=ctx.device), requires_grad=self.tuned)
        self.target_entropy = (cfg.target_entropy if cfg.target_entropy is not None
                               else -float(ctx.env.n_actions))
        super().__init__(ctx)

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_alpha] if self.tuned else []

    def losses(self, b: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        policy, obs = self.policy, b["obs"]
        shape = (obs.shape[0], policy.n_actions)
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            mean, log_std = policy.split(policy(b["next_obs"]))
            next_actions, next_logp = squashed_sample(mean, log_std, self.noise(*shape))
            next_q = self.critic_target(b["next_obs"], next_actions).squeeze(-1)
            targets = soft_q_targets(next_q, next_logp, alpha, b["returns"], b["discounts"])
        q = self.critics(obs, b["actions"]).squeeze(-1)
        value_loss = critic_loss(q, targets, b["weights"])
        mean, log_std = policy.split(policy(obs))
        actions, logp = squashed_sample(mean, log_std, self.noise(*shape))
        q_pi = self.critics(obs, actions, frozen=True).squeeze(-1)
        pi_loss = policy_loss(q_pi, logp, alpha)
        loss = value_loss + pi_loss
        if self.tuned:
            loss = loss + temperature_loss(self.log_alpha, logp, self.target_entropy)
        q = q.detach()
        td = (targets - q).abs().mean(0)
        stats = {"value_loss": value_loss.detach(), "policy_loss": pi_loss.detach(),
                 "q_mean": q.mean(), "q_max": q.max(), "td_abs": td.mean(),
                 "entropy": -logp.detach().mean(), "ent_coef": alpha[0]}
        return loss, stats, td
