"""The hostile-input suite of issue 34: every subcommand, fed what a hostile (or hurried) user would feed it."""
