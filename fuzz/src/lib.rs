//! What both fuzz targets check on the bytes they are given: the checkpoint loader refuses
//! them with an error, or loads them into an optimizer that saves the same bytes back and can
//! step its model; a refused load leaves the optimizer it was loaded into exactly as it was.
//! Nothing panics, hangs or allocates more than a small multiple of the input.

use optkern::{Adam, Element, Error, StatefulOptimizer, bf16, f16};

/// The largest model a loaded optimizer is stepped on (an optimizer without state, such as
/// SGD, can name lengths its payload does not hold).
const MAX_STEPPED: usize = 1 << 16;

/// Checks the loader on `bytes` for every state type, and loading into a stepped optimizer.
pub fn check(bytes: &[u8]) {
    from_checkpoint::<f32>(bytes);
    from_checkpoint::<bf16>(bytes);
    from_checkpoint::<f16>(bytes);

    let mut opt = StatefulOptimizer::<f32>::new(Adam::adamw(1e-3, 0.01).build().unwrap()).unwrap();
    let (mut a, mut b) = (vec![1.0f32; 5], vec![-1.0f32; 3]);
    opt.step(
        &mut [&mut a[..], &mut b[..]],
        &[&[0.5f32; 5][..], &[0.25f32; 3][..]],
    )
    .unwrap();
    let before = opt.save();
    match opt.load(bytes) {
        Ok(()) => assert!(opt.save() == bytes, "loaded, but saves other bytes"),
        Err(Error::Checkpoint(_)) => assert!(opt.save() == before, "a refused load changed it"),
        Err(e) => panic!("not a checkpoint error: {e}"),
    }
}

fn from_checkpoint<T: Element>(bytes: &[u8]) {
    let mut opt = match StatefulOptimizer::<T>::from_checkpoint(bytes) {
        Ok(opt) => opt,
        Err(Error::Checkpoint(_)) => return,
        Err(e) => panic!("not a checkpoint error: {e}"),
    };
    assert!(opt.save() == bytes, "loaded, but saves other bytes");
    // The loaded optimizer steps a model of its lengths (or refuses with an error).
    let lengths = opt
        .tensor_lengths()
        .map(<[usize]>::to_vec)
        .unwrap_or(vec![4, 3]);
    if lengths.iter().sum::<usize>() > MAX_STEPPED {
        return;
    }
    let mut weights: Vec<Vec<f32>> = lengths.iter().map(|&n| vec![0.5; n]).collect();
    let grads: Vec<Vec<f32>> = lengths.iter().map(|&n| vec![0.25; n]).collect();
    let mut w: Vec<&mut [f32]> = weights.iter_mut().map(|x| &mut x[..]).collect();
    let g: Vec<&[f32]> = grads.iter().map(|x| &x[..]).collect();
    let _ = opt.step(&mut w, &g);
}

/// `bytes` with its length field and checksum made right, so that the loader looks past them.
pub fn mend(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 24 {
        return None;
    }
    let mut out = bytes.to_vec();
    let n = out.len();
    out[12..20].copy_from_slice(&(n as u64).to_le_bytes());
    let crc = crc32(&out[..n - 4]);
    out[n - 4..].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// CRC-32 (IEEE 802.3), bit by bit from its definition.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
