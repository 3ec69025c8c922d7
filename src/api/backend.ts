/** tfl.backend: the backend choice and its report, the readback rule, registered kernels. */
export { initBackend, backendReport, backendLine, formatBackendReport, BACKEND_ORDER, type BackendName, type BackendReport, type BackendAttempt } from '../backend/index.js';
export { forbidSyncReadback, syncReadbackForbidden } from '../backend/readback.js';
export { registeredKernels, einsumByOps } from '../backend/kernels.js';
