"""Components that write a stage's records out of the run (files others read)."""
