"""The theory the project reproduces: the over-adaptation linear model and the tilting view of forgetting."""
