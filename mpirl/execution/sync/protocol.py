"""The messages between a learner and its actors (world ranks in one ``group`` communicator,
the learner at rank 0 in it).

The learner sends a control message ``[command, exit code, weights follow (0/1), progress
(fraction of the budget done), request number]`` and, when it says so, the policy's flat
weights; the actor answers RUN with one message of experience (``RunSetup.make_message``).
STOP is always followed by weights; SAVE asks the actor to join a checkpoint, after which the
next command is still to come.

With --straggler-cutoff, a learner whose other actors have delivered sends the late ones a
CUT message holding the request number: the actor ends its rollout there and sends what it
has. A CUT that crosses a finished rollout is recognised by its older number and dropped.
"""
from __future__ import annotations

MESSAGE_TAG = 11
WEIGHTS_TAG = 12
CONTROL_TAG = 13
CUT_TAG = 14
RUN, STOP, SAVE = 0.0, 1.0, 2.0
CONTROL_SIZE = 5
