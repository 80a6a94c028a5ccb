"""Running a study: its cells, the graph and executors that run them, and the stages that declare them."""
