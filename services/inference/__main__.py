"""`python -m services.inference`: the service in this process, or inside Envoy (`grpc_server`).

Behind Envoy, this process only launches Envoy and waits on it: it imports no more than that needs
(not torch, not the service), since it stays beside Envoy for as long as the service runs."""

import sys

from atelier.runtime.settings import load_settings
from services.inference.settings import InferenceSettings

settings = load_settings(InferenceSettings, "inference")
if settings.grpc_server == "envoy":
    from services.inference.envoy import serve_in_envoy

    sys.exit(serve_in_envoy(settings))
else:
    from services.inference.server import main

    main()
