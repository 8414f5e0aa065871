//! The momentum family's own checks: the quick fixed-type calls against the config calls. Its
//! bit-exact property tests against the scalar oracle (every form and option, all 27 element
//! types) are its cases' in `tests/optimizer_props.rs`.

use crate::common;

use common::data::{Misaligned, Rng};
use common::{same_bits, sequential};
use optkern::{Backend, Element, Momentum, Sgd};

/// The fixed-type calls are PyTorch's plain heavy ball without the first-step rule: the same
/// bits as the config call at a step other than the first.
#[test]
fn fixed_type_calls_match_config_calls() {
    fn check<E: Element>(
        fixed: fn(&mut [E], &mut [E], &[E], f32, f32),
        sgd: fn(&mut [E], &[E], f32),
    ) {
        let mut rng = Rng::new(7);
        for len in [0, 1, 7, 8, 15, 16, 17, 100, 1000, 70_000] {
            let mk = |rng: &mut Rng| Misaligned::<E>::new(len, 3, || rng.value(false));
            let (w0, v0, g) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
            let config = Momentum::heavy_ball(0.01, 0.9).build().unwrap();
            let (mut w_ref, mut v_ref) = (w0.copy(), v0.copy());
            sequential(Backend::Scalar)
                .momentum_step(w_ref.slice_mut(), v_ref.slice_mut(), g.slice(), &config, 2)
                .unwrap();
            let (mut w, mut v) = (w0.copy(), v0.copy());
            fixed(w.slice_mut(), v.slice_mut(), g.slice(), 0.01, 0.9);
            same_bits("weights", w.slice(), w_ref.slice()).unwrap();
            same_bits("velocity", v.slice(), v_ref.slice()).unwrap();

            let mut w_ref = w0.copy();
            let plain = Sgd::new(0.01).unwrap();
            sequential(Backend::Scalar)
                .sgd_step(w_ref.slice_mut(), g.slice(), &plain, 1)
                .unwrap();
            let mut w = w0.copy();
            sgd(w.slice_mut(), g.slice(), 0.01);
            same_bits("sgd weights", w.slice(), w_ref.slice()).unwrap();
        }
    }
    check::<f32>(optkern::momentum_step_f32, optkern::sgd_step_f32);
    check::<optkern::f16>(optkern::momentum_step_f16, optkern::sgd_step_f16);
    check::<optkern::bf16>(optkern::momentum_step_bf16, optkern::sgd_step_bf16);
}
