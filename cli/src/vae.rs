//! The variational autoencoder of Keras's guide "Making new layers and
//! models via subclassing", written the Keras way: a `Sampling` layer drawing
//! `random_normal` noise, an `Encoder` layer returning `(z_mean, z_log_var,
//! z)`, a `decoder` model (a built model is a layer), and the VAE adding its
//! KL divergence with `add_loss`.
//! Sub-layers are built on their first call, with the shapes they get.
//!
//! The model code is between the `model code` markers (its line count is
//! what the README compares with Keras's); `cli/examples/vae.rs` trains it
//! and `lossgraph demo vae` trains it with plots.

// --- model code (counted) ---
use lossgraph::layers::{Dense, Input};
use lossgraph::{CallCtx, Layer, Model, Result, Sequential, Sublayer, Tensor};

/// Uses (z_mean, z_log_var) to sample z, the vector encoding a digit.
pub struct Sampling;

impl Layer for Sampling {
    fn call_multi(&self, ctx: &mut CallCtx, inputs: &[Tensor]) -> Result<Tensor> {
        let (z_mean, z_log_var) = (&inputs[0], &inputs[1]);
        let epsilon = ctx.random_normal(1337, z_mean.shape());
        Ok(z_mean + (z_log_var * 0.5).exp() * epsilon)
    }
}

/// Maps digits to a triplet (z_mean, z_log_var, z).
pub struct Encoder {
    dense_proj: Sublayer<Dense>,
    dense_mean: Sublayer<Dense>,
    dense_log_var: Sublayer<Dense>,
    sampling: Sublayer<Sampling>,
}

impl Layer for Encoder {
    fn call_outputs(&self, ctx: &mut CallCtx, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = ctx.call(&self.dense_proj, &inputs[0])?;
        let z_mean = ctx.call(&self.dense_mean, &x)?;
        let z_log_var = ctx.call(&self.dense_log_var, &x)?;
        let z = ctx.call_multi(&self.sampling, &[z_mean.clone(), z_log_var.clone()])?;
        Ok(vec![z_mean, z_log_var, z])
    }
}

/// Converts z, the encoded digit vector, back into a readable digit.
pub fn decoder(original_dim: usize, hidden: usize, latent: usize, seed: u64) -> Result<Model> {
    Sequential::new("decoder")
        .seed(seed)
        .add(Input::new(&[latent]))
        .add(Dense::new(hidden).activation("relu"))
        .add(Dense::new(original_dim).activation("sigmoid"))
        .build()
}

/// Combines the encoder and decoder into an end-to-end model for training.
pub struct VariationalAutoEncoder {
    encoder: Sublayer<Encoder>,
    decoder: Sublayer<Model>,
}

impl Layer for VariationalAutoEncoder {
    fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
        let z = ctx.call_outputs(&self.encoder, std::slice::from_ref(inputs))?;
        let (z_mean, z_log_var) = (&z[0], &z[1]);
        let reconstructed = ctx.call(&self.decoder, &z[2])?;
        // Add KL divergence regularization loss.
        let kl_loss = (z_log_var - z_mean * z_mean - z_log_var.exp() + 1.0).mean_all() * -0.5;
        ctx.add_loss(kl_loss);
        Ok(reconstructed)
    }
}

/// The VAE for inputs of `original_dim` features, initialised from `seed`.
pub fn vae(original_dim: usize, hidden: usize, latent: usize, seed: u64) -> Result<Model> {
    let dense = |units, activation| Sublayer::new(Dense::new(units).activation(activation));
    let encoder = Encoder {
        dense_proj: dense(hidden, "relu"),
        dense_mean: dense(latent, "linear"),
        dense_log_var: dense(latent, "linear"),
        sampling: Sublayer::new(Sampling),
    };
    let vae = VariationalAutoEncoder {
        encoder: Sublayer::new(encoder),
        decoder: Sublayer::new(decoder(original_dim, hidden, latent, seed)?),
    };
    let input = Input::new(&[original_dim]);
    Sequential::new("autoencoder")
        .seed(seed)
        .add(input)
        .add(vae)
        .build()
}
// --- end of model code ---
