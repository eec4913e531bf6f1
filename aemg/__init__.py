"""aemg: surface-EMG pipeline (download, harmonize, tokenize, pretrain, evaluate).

No process of the pipeline may contact a host other than the declared dataset URLs and loopback
services. Prefect's server and client send usage analytics unless told not to, and every entry
point (``aemg``, a ``dvc repro`` stage, a served deployment) imports this package before Prefect,
so the defaults are set here, once; an explicit environment setting still wins. DVC's own
analytics are off in the committed ``.dvc/config`` (``core.analytics = false``).
"""

from __future__ import annotations

import os

NO_TELEMETRY = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the (ephemeral) server's telemetry service
    "DO_NOT_TRACK": "1",  # Prefect's client-side analytics, and any tool honouring the convention
    "DVC_NO_ANALYTICS": "1",  # dvc called from inside a stage or a flow
}
# Prefect's ephemeral API server must answer within 20 s by default; on a loaded 2-core machine it
# took longer and a stage failed before doing any work, so a plain run waits up to two minutes.
EPHEMERAL_SERVER = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
for _key, _value in {**NO_TELEMETRY, **EPHEMERAL_SERVER}.items():
    os.environ.setdefault(_key, _value)
