"""The reconciler process: its loop (loop.py) and the pieces the loop uses, one job each:
reading stored hints (hints.py), publishing the pool catalogue (catalogue.py), rendering a
worker's user-data (userdata.py), the cloud as one pass sees it (cloud_view.py) and the
single-instance lock (lock.py). The wakeup FIFO is dtserver/wakeup.py: the API writes it.
"""
