"""Map stages on a cluster: ``recipe run --executor slurm|local --shards N``, through submitit.

A map stage already splits into shards (``--shard I/N``: shard I takes every N-th batch into its own
write-ahead log, and an unsharded run merges the logs and finishes the stage). Here the submitting
process walks the recipe in order; for each map stage that is not finished yet it runs the upstream
stages itself (cached ones are reused), submits the N shards as one job array (``runner.cluster.job``),
waits for them, and goes on (``runner.cluster.submit``); at the end one ordinary run merges every shard and
runs the remaining stages (whole stages such as trainers run in the submitting process; a trainer's
``launch:`` block spreads it over GPUs).
``local`` runs the same array as local processes (submitit's local executor), which is how it is tested.
Job resources come from the recipe's ``executor:`` block (``runner.cluster.options``).
"""
