/** tfl.ioi: the indirect-object-identification task (Wang et al.): templates, names, datasets, corruptions, positions, logit difference. */
export * from '../data/ioi.js';
