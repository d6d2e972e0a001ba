"""The node agent: discovers the node's GPUs, registers with the scheduler, runs the tasks it is given."""
