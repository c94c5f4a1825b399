"""The licensing log of an instance (issue "Proof an auditor accepts"): entries chained by hash, the RFC 6962 tree
over them, checkpoints as C2SP signed notes, and the offline checks of an audit bundle."""
