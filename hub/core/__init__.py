"""The platform core: settings, databases and deployment records, accounts, storage, secrets, environments,
and the isolation of users on this machine.
"""
