//! Leaky integrate-and-fire neuron in fixed point (placeholder until the runtime issue).
