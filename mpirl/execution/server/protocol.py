"""The slots of the parameter-server execution model inside the messages' headers
(``mpirl.ps.messages``)."""
from mpirl.ps.messages import REPORT_SLOTS

# Report slots (worker -> every server): env steps of this gradient; finished episodes, their
# return sum, their length sum; a stop signal the worker received; an evaluation's index,
# mean and std (index -1: none); a non-finite gradient (not sent); then the algorithm's
# statistics of the gradient, in the order of its ``stat_keys``.
STEPS, EPISODES = 0, 1
REQUEST, EVAL_INDEX, EVAL_MEAN, EVAL_STD, NONFINITE = 4, 5, 6, 7, 8
STATS = 9
MAX_STATS = REPORT_SLOTS - STATS
# Reply slots (server -> worker). Only the lead fills STOP, CODE, EVALUATE and PAUSE.
STOP, CODE, EVALUATE, PROGRESS, PAUSE = 0, 1, 2, 3, 4
