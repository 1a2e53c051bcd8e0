local base = import "base.libsonnet";
base + { learning_rate: 1e-4 }
