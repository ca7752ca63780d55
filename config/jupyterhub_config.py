# JupyterHub configuration of ai4lab. `ai4lab up` starts the hub with this file.
# Everything comes from the platform settings (ai4lab.yaml / AI4LAB_* variables);
# add your own JupyterHub settings below, e.g. OIDC login:
#
#   c.JupyterHub.authenticator_class = "generic-oauth"
#   c.GenericOAuthenticator.oauth_callback_url = "https://lab.example.org/hub/oauth_callback"
#   c.GenericOAuthenticator.client_id = "..."; c.GenericOAuthenticator.client_secret = "..."
#   c.GenericOAuthenticator.authorize_url / token_url / userdata_url = ...
#   c.GenericOAuthenticator.allow_all = True
from ai4lab.jhub.hubconfig import configure

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
configure(c)
