"""dsr: GDPR data subject requests as code.

The package reconciles desired state (YAML in a workspace) with the actual state of real
databases: observe, plan (pure), apply (journalled, audited, idempotent).
"""

__version__ = "0.2.0"
