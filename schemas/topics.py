"""The contract's topic names, defined once: the models, the rules and the worker name topics
from here (with ``SMI_TOPIC_PREFIX`` in front, where the worker deploys them)."""

from __future__ import annotations

CPL = "cpl.entries"
INVENTORY = "smi.inventory"
REQUESTS = "duis.service-requests"
RESPONSES = "duis.device-responses"
DEVICE_INPUTS = (INVENTORY, REQUESTS, RESPONSES)
INPUTS = (CPL, *DEVICE_INPUTS)

COMMANDS = "duis.device-commands"
REJECTIONS = "duis.rejections"
CORRECTIONS = "smi.status-corrections"
ALERTS = "dcc.alerts"
DEADLETTER = "smi.deadletter"
OUTPUTS = (COMMANDS, REJECTIONS, CORRECTIONS, ALERTS, DEADLETTER)
