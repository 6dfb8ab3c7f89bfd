"""Chemistry for seiko: molecule oracles (PMO tasks), scoring blocks and molecule utilities."""
