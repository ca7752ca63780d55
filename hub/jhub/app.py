"""The hub process of ``ai4lab up``: JupyterHub itself, with a faster and quieter stop.

Why a subclass, for two things JupyterHub's configuration cannot change:

- JupyterHub stops its services one after the other, and learns that one has
  exited by polling at growing intervals: the platform API and the MLflow
  gateway took 5 s of every Ctrl-C, and sessions were stopped only after them.
  Services and sessions are now told together (each still stopped as
  JupyterHub stops it).
- The services' health check, every minute, that falls while the hub stops its
  services found a service whose server row was already deleted and logged
  ``AttributeError: 'NoneType' object has no attribute 'proto'``. It now skips
  a hub that is stopping.
"""

from __future__ import annotations

import asyncio

from jupyterhub.app import JupyterHub


class Ai4labJupyterHub(JupyterHub):
    _stopping_services = False

    async def cleanup(self) -> None:
        self._stopping_services = True
        managed = [s for s in self._service_map.values() if s.managed and s.spawner]
        stops = [s.stop() for s in managed]
        if self.cleanup_servers:  # sessions too, beside the services rather than after them
            stops += [
                user.stop(name)
                for user in self.users.values()
                for name, spawner in list(user.spawners.items())
                if spawner.active
            ]
        self.log.info("Stopping %i services and %i session(s) together...", len(managed), len(stops) - len(managed))
        for failed in await asyncio.gather(*stops, return_exceptions=True):
            if isinstance(failed, Exception):
                self.log.error("Failed to stop: %s", failed)
        await super().cleanup()  # finds them stopped; then the proxy

    async def check_services_health(self) -> None:
        if self._stopping_services:
            return
        await super().check_services_health()


main = Ai4labJupyterHub.launch_instance

if __name__ == "__main__":
    main()
