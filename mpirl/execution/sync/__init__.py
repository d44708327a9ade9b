"""Synchronous learners and actors: learners average gradients with one allreduce per update and
send fresh weights to the actors that feed them."""
