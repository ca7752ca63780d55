"""The statuses a deployment goes through, in groups the code asks about (no database import: clients use it)."""

#: Not ended yet: waiting in a queue, starting, or running.
ACTIVE_STATUSES = ("queued", "starting", "running")
#: Its process or job exists (it holds resources).
RUNNING_STATUSES = ("starting", "running")
#: Not answering yet.
STARTING_STATUSES = ("queued", "starting")
#: Ended, for good.
FINAL_STATUSES = ("succeeded", "failed", "stopped", "cancelled")
