"""Algorithms, each a plug-in: a package that declares everything that makes it itself
(``api.Algorithm``) and registers it once (``registry``).

Built in: ``a2c``, ``ppo``, ``dqn``, ``sac``, ``td3`` and ``d4pg`` (synchronous learners and
actors), ``impala`` (asynchronous actors, synchronous learners) and ``a3c`` (parameter
servers). Beside them, what several share: ``actor_critic`` (options, policy and rollouts of
the actor-critics), ``onpolicy`` (their synchronous learners' common part), ``offpolicy`` (the
replay-based learners), ``returns`` (GAE, V-trace), ``normalization`` and ``moments``
(statistics kept identical on every learner), ``optim``.
Losses and update rules are functions of tensors, with no MPI and no environments.
"""
