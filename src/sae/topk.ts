/** Exact top-k selection for TopK SAEs. */
import * as tf from '@tensorflow/tfjs';

/**
 * A 0/1 float32 mask [n, d] marking exactly the k largest entries of each row of `pre` [n, d]
 * (SAELens takes torch.topk's indices; on ties tf.topk keeps the lower index). A threshold test
 * (pre >= k-th largest) would keep more than k entries when values tie at the threshold.
 */
export function topKMaskExact(pre: tf.Tensor2D, k: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [n, d] = pre.shape;
    const { indices } = tf.topk(pre, k, false); // [n, k]
    const rows = tf.tile(tf.reshape(tf.range(0, n, 1, 'int32'), [n, 1]), [1, k]);
    const at = tf.reshape(tf.stack([rows, indices], 2), [n * k, 2]);
    return tf.scatterND(at, tf.ones([n * k], 'float32'), [n, d]) as tf.Tensor2D;
  });
}
