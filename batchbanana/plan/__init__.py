"""The plan: a manifest read with every problem at its file:line, items files, input images, and the
Job that comes out of them, checked against the rules before anything is sent."""
