"""Acting: environments, collecting experience with a policy, the messages acting ranks send,
and evaluation episodes."""
