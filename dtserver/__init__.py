"""dynamictorque: an elastic autoscaler for TORQUE/PBS clusters on OpenStack."""

__version__ = "0.1.0"
