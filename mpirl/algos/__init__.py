"""Algorithms, each a plug-in: a package that declares everything that makes it itself
(``api.Algorithm``) and registers it once (``registry``).

Built in: ``a2c``, ``ppo``, ``dqn`` (synchronous learners and actors) and ``a3c`` (parameter
servers). Beside them, what several share: ``actor_critic`` (options, policy and rollouts of
the actor-critics), ``onpolicy`` (their synchronous learners' common part), ``returns`` (GAE),
``normalization`` and ``moments`` (statistics kept identical on every learner), ``optim``.
Losses and update rules are functions of tensors, with no MPI and no environments.
"""
