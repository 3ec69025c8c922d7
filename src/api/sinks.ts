/** tfl.sinks: column means and entropies, attention sinks (Gu et al.), hidden sinks (Yu et al.), massive activations and VAR sink tokens (Kang et al.). */
export * from '../analyses/attention-stats.js';
export * from '../analyses/sinks.js';
export * from '../analyses/massive.js';
