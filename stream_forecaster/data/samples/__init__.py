"""The sample data shipped with the package: two real sensor data sets, with their
provenance and checksums in ``README.md`` beside them.

``simulate --source beijing`` and ``--source energy`` replay them, ``make run`` trains its
first model on the Beijing file, and the tests and benchmarks read them; being package data,
they are there in a wheel install too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

SAMPLES_DIR: Final = Path(__file__).resolve().parent
#: Hourly PM2.5 and weather at the US Embassy in Beijing, 2010-2014 (UCI, CC BY 4.0).
BEIJING_CSV: Final = SAMPLES_DIR / "beijing_pm25_hourly.csv"
#: The classic eight inputs of the Beijing data, in model order; the target is ``pm2.5``.
BEIJING_FEATURES: Final = ("pm2.5", "DEWP", "TEMP", "PRES", "cbwd", "Iws", "Is", "Ir")
BEIJING_TARGET: Final = "pm2.5"
BEIJING_TIME_PARTS: Final = ("year", "month", "day", "hour")
#: Temperature and humidity of a house's nine rooms and outdoors, every 10 minutes, 2016 (UCI,
#: CC BY 4.0).
ENERGY_CSV: Final = SAMPLES_DIR / "energy_appliances_10min.csv.xz"
#: What each room sends: its own T and RH, and the shared outdoor columns.
ENERGY_FEATURES: Final = ("T", "RH", "T_out", "RH_out", "Press_mm_hg", "Windspeed")
