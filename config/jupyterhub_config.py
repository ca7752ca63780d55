# JupyterHub configuration of ai4lab. `ai4lab up` starts the hub with this file.
# Everything comes from the platform settings (ai4lab.yaml / AI4LAB_* variables);
# add your own JupyterHub settings below. OIDC login is a platform setting too
# (`authenticator: ai4lab-oidc` and `oidc: {issuer, client_id, ...}`, see the README's
# "Connect your login (OIDC)"); oauthenticator's own traits still apply on top, e.g.
#
#   c.Ai4labOIDCAuthenticator.extra_authorize_params = {"prompt": "login"}
from ai4lab.jhub.hubconfig import configure

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
configure(c)
