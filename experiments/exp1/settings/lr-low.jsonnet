local base = import "base.libsonnet";
base + { learning_rate: 2e-5 }
