"""smi-streams: keeps the Smart Metering Inventory's firmware status in line with the devices."""

__version__ = "0.1.0"
