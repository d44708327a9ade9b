"""The A3C slots inside the parameter server's message headers (``mpirl.ps.messages``)."""

# Report slots (worker -> every server).
STEPS, EPISODES, RETURN_SUM, LENGTH_SUM = 0, 1, 2, 3
LOSS = 4  # loss, policy_loss, value_loss, entropy, grad_norm
REQUEST, EVAL_INDEX, EVAL_MEAN, EVAL_STD, NONFINITE = 9, 10, 11, 12, 13
LOSS_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")
# Reply slots (server -> worker). Only the lead fills STOP, CODE, EVALUATE and PAUSE.
STOP, CODE, EVALUATE, PROGRESS, PAUSE = 0, 1, 2, 3, 4
