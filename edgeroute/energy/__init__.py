"""Energy per query: measured where the hardware allows, estimated and labelled otherwise.

One file per backend (``rapl``, ``nvml``, ``apple``, ``emi``, ``battery``, ``estimate``), each an
``EnergyMeter``; ``EnergyMonitor`` combines them and attributes device-wide figures to the query; ``detect``
says which backends exist here and why the others do not.
"""

from .base import Availability, EnergyMeter, EnergyReading, QueryEnergy, Sample, combine
from .detect import build_monitor, probe_backends
from .estimate import EstimateMeter
from .monitor import EnergyMonitor, EnergyWindow

__all__ = [
    "Availability",
    "EnergyMeter",
    "EnergyMonitor",
    "EnergyReading",
    "EnergyWindow",
    "EstimateMeter",
    "QueryEnergy",
    "Sample",
    "build_monitor",
    "combine",
    "probe_backends",
]
