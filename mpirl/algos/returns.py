"""Advantage and return estimates over a rollout of shape (T, N) (time, envs): GAE for
on-policy rollouts, V-trace for rollouts of older weights."""
from __future__ import annotations

import numpy as np


def gae(rewards: np.ndarray, values: np.ndarray, last_values: np.ndarray, dones: np.ndarray,
        gamma: float, lam: float, lengths: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    ``dones[t]`` is 1 where the episode ended after step t (no bootstrap across it; a truncated
    episode's bootstrap value is already folded into its last reward). ``last_values`` are the
    values of the observations after the final step. With ``lam == 1`` the advantages are plain
    n-step returns minus values. Returns float32 (advantages, returns), both (T, N).

    ``lengths`` (N,): column j holds only its first ``lengths[j]`` steps (a rollout cut
    short); its observation after them is that of step ``lengths[j]``, whose value bootstraps
    it, and its advantages past them are 0.
    """
    T = rewards.shape[0]
    adv = np.zeros(rewards.shape, dtype=np.float32)
    next_adv = np.zeros(last_values.shape, dtype=np.float32)
    next_value = last_values
    not_done = 1.0 - dones
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_value - values[t]
        next_adv = delta + gamma * lam * not_done[t] * next_adv
        if lengths is not None:
            next_adv = np.where(t < lengths, next_adv, 0.0).astype(np.float32)
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


def valid_steps(lengths: np.ndarray, T: int) -> np.ndarray:
    """(T x N,) True where step t of column j is among its first ``lengths[j]``: the steps of
    rollouts cut short, flattened as a batch's (T, N) arrays are."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).reshape(-1)


def running_returns(carry: np.ndarray, rewards: np.ndarray, gamma: float,
                    dones: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The discounted return of each env stream accumulated forward in time, R_t = gamma
    R_{t-1} + r_t, from ``carry`` (N,), the value before the first step: what reward scaling
    divides by the std of. With ``dones`` it restarts after each episode end; without, it runs
    on across episodes (non-episodic, as RND's intrinsic return). Returns (R (T, N), the new
    carry), float64.
    """
    out = np.empty(rewards.shape, dtype=np.float64)
    running = np.array(carry, dtype=np.float64)
    for t in range(rewards.shape[0]):
        running = running * gamma + rewards[t]
        out[t] = running
        if dones is not None:
            running[dones[t] > 0] = 0.0
    return out, running


def vtrace(log_rhos, discounts, rewards, values, bootstrap_value, rho_bar: float = 1.0,
           c_bar: float = 1.0, pg_rho_bar: float = 1.0, lam: float = 1.0):
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, arXiv:1802.01561,
    section 4.1), of shape (T, N), without gradient: numpy arrays in, numpy arrays out
    (a CPU learner's few dozen small operations cost least there), or torch tensors.

    ``log_rhos``: log pi(a_t|x_t) - log mu(a_t|x_t), the target over the behaviour policy.
    ``discounts``: gamma where the episode goes on after step t, 0 where it ended (a truncated
    episode's bootstrap value is folded into its last reward, as in ``gae``). ``values``: the
    learner's V(x_t); ``bootstrap_value`` (N,): V(x_T) after the last step. With
    rho_t = min(rho_bar, e^log_rho) and c_t = lam min(c_bar, e^log_rho) (``lam`` as in the
    paper's remark on TD(lambda)):

        v_s = V(x_s) + delta_s + discount_s c_s (v_{s+1} - V(x_{s+1})),
        delta_s = rho_s (r_s + discount_s V(x_{s+1}) - V(x_s)),

    with v_T = V(x_T); the advantages are min(pg_rho_bar, e^log_rho_s) (r_s + discount_s
    v_{s+1} - V(x_s)). With behaviour == target (log_rhos 0) and bars >= 1, v_s is the
    return of ``gae`` with the same lambda (with lambda 1, the n-step return). Returns
    (vs, pg_advantages).
    """
    if isinstance(log_rhos, np.ndarray):
        return _vtrace(np, log_rhos, discounts, rewards, values, bootstrap_value, rho_bar,
                       c_bar, pg_rho_bar, lam)
    import torch

    with torch.no_grad():
        return _vtrace(torch, log_rhos, discounts, rewards, values.detach(),
                       bootstrap_value.detach(), rho_bar, c_bar, pg_rho_bar, lam)


def _vtrace(xp, log_rhos, discounts, rewards, values, bootstrap_value, rho_bar, c_bar,
            pg_rho_bar, lam):
    """``vtrace`` in the array module ``xp`` (numpy or torch)."""
    rhos = xp.exp(log_rhos)
    clipped_rhos = rhos.clip(max=rho_bar)
    cs = lam * rhos.clip(max=c_bar)
    next_values = xp.concatenate([values[1:], bootstrap_value[None]], 0)
    deltas = clipped_rhos * (rewards + discounts * next_values - values)
    corrections = xp.empty_like(values)
    acc = xp.zeros_like(bootstrap_value)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        corrections[t] = acc
    vs = values + corrections
    next_vs = xp.concatenate([vs[1:], bootstrap_value[None]], 0)
    return vs, rhos.clip(max=pg_rho_bar) * (rewards + discounts * next_vs - values)
