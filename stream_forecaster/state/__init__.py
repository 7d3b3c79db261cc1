"""The windows of every series key, and how they survive restarts.

- ``windows``: the store and its time rules (duplicates, late readings, gaps).
- ``window_slots``: its storage, one slot per key in preallocated numpy arrays.
- ``updates``: what readings did to their windows.
- ``snapshots``: a window as bytes and back.
- ``changelog``: the compacted topic of snapshots, and the restore from it.
"""
