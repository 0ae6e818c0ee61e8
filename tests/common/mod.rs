//! Test helpers shared by the front-end test binaries.

use lossgraph::{BuildCtx, CallCtx, Init, Layer, Result, Tensor};

/// The seed's CustomDenseLayer, almost line for line.
pub struct CustomDenseLayer {
    pub units: usize,
}

impl Layer for CustomDenseLayer {
    fn build(&mut self, ctx: &mut BuildCtx, input_shape: &[usize]) -> Result<()> {
        let in_features = input_shape[input_shape.len() - 1];
        ctx.add_weight(
            "kernel",
            &[in_features, self.units],
            Init::RandomNormal,
            true,
        )?;
        ctx.add_weight("bias", &[self.units], Init::Zeros, true)?;
        ctx.add_loss(|w| w.weight("kernel").abs().sum_all() * 0.01);
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
        Ok(inputs.matmul(ctx.weight("kernel")) + ctx.weight("bias"))
    }
}
