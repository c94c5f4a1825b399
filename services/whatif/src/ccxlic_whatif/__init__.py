"""What-if: an instance's history, read from the log, replayed in this process through the chain's own deciders,
as it was and under other licenses or settings (`ccxlic whatif`, the console's what-if form)."""
