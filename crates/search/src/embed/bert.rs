//! A BERT encoder's forward pass on the CPU, in plain Rust: embeddings, self-attention
//! layers, mean pooling. Sized for small sentence encoders (all-MiniLM-L6-v2: 6 layers,
//! 384 wide, 12 heads); weights are read from a `.safetensors` file (F32).

use std::collections::HashMap;

use super::EmbedError;

const LAYER_NORM_EPS: f32 = 1e-12;

struct Linear {
    /// `[out][in]`, row-major (PyTorch's layout).
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Linear {
    /// `x` is `[n][inputs]`; returns `[n][outputs]`. Rows are taken four at a time so
    /// each weight row is read once per four tokens (the weights, not the arithmetic,
    /// bound this on a small model).
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let inputs = self.inputs;
        let outputs = self.bias.len();
        let rows = x.len() / inputs;
        let mut y = vec![0f32; rows * outputs];
        let mut row = 0;
        while row + 4 <= rows {
            let block = [
                &x[row * inputs..(row + 1) * inputs],
                &x[(row + 1) * inputs..(row + 2) * inputs],
                &x[(row + 2) * inputs..(row + 3) * inputs],
                &x[(row + 3) * inputs..(row + 4) * inputs],
            ];
            for o in 0..outputs {
                let w = &self.weight[o * inputs..(o + 1) * inputs];
                let sums = dot4(block, w);
                for (k, sum) in sums.iter().enumerate() {
                    y[(row + k) * outputs + o] = sum + self.bias[o];
                }
            }
            row += 4;
        }
        for row in row..rows {
            let input = &x[row * inputs..(row + 1) * inputs];
            for o in 0..outputs {
                let w = &self.weight[o * inputs..(o + 1) * inputs];
                y[row * outputs + o] = dot(input, w) + self.bias[o];
            }
        }
        y
    }
}

/// A dot product in eight lanes, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Four dot products against one shared `w`, eight lanes each (SIMD after compilation).
fn dot4(a: [&[f32]; 4], w: &[f32]) -> [f32; 4] {
    let mut lanes = [[0f32; 8]; 4];
    let whole = w.len() / 8 * 8;
    for start in (0..whole).step_by(8) {
        let wv = &w[start..start + 8];
        for (k, row) in a.iter().enumerate() {
            let xv = &row[start..start + 8];
            for lane in 0..8 {
                lanes[k][lane] += xv[lane] * wv[lane];
            }
        }
    }
    let mut out = [0f32; 4];
    for (k, row) in a.iter().enumerate() {
        let tail: f32 = row[whole..]
            .iter()
            .zip(&w[whole..])
            .map(|(x, y)| x * y)
            .sum();
        out[k] = lanes[k].iter().sum::<f32>() + tail;
    }
    out
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Norm {
    fn apply(&self, x: &mut [f32]) {
        let width = self.weight.len();
        for row in x.chunks_exact_mut(width) {
            let mean = row.iter().sum::<f32>() / width as f32;
            let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
            let scale = 1.0 / (variance + LAYER_NORM_EPS).sqrt();
            for (i, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * scale * self.weight[i] + self.bias[i];
            }
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// The encoder.
pub(crate) struct Bert {
    words: Vec<f32>,
    positions: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    width: usize,
    heads: usize,
    max_positions: usize,
}

/// The tensors of a `.safetensors` file, as F32.
fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, Vec<f32>>, EmbedError> {
    let bad = |why: &str| EmbedError::Model(format!("safetensors: {why}"));
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| bad("too short"))?;
    let header_len = usize::try_from(header_len).map_err(|_| bad("header length"))?;
    let header_end = 8usize
        .checked_add(header_len)
        .ok_or_else(|| bad("header length"))?;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..header_end).ok_or_else(|| bad("header"))?)
            .map_err(|e| bad(&e.to_string()))?;
    let data = &bytes[header_end..];
    let mut tensors = HashMap::new();
    for (name, info) in header
        .as_object()
        .ok_or_else(|| bad("header is not an object"))?
    {
        if name == "__metadata__" || info["dtype"] != "F32" {
            continue;
        }
        let offsets = info["data_offsets"]
            .as_array()
            .ok_or_else(|| bad("offsets"))?;
        let (start, end) = (
            offsets
                .first()
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad("offsets"))? as usize,
            offsets
                .get(1)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad("offsets"))? as usize,
        );
        let raw = data
            .get(start..end)
            .ok_or_else(|| bad("offsets out of the file"))?;
        let values = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        tensors.insert(name.clone(), values);
    }
    Ok(tensors)
}

/// The shape of a BERT encoder (`config.json`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) width: usize,
    pub(crate) heads: usize,
    pub(crate) layers: usize,
    pub(crate) intermediate: usize,
}

impl Bert {
    /// Loads a BERT encoder of `shape` from a `.safetensors` file.
    pub(crate) fn load(bytes: &[u8], shape: Shape) -> Result<Bert, EmbedError> {
        let Shape {
            width,
            heads,
            layers,
            intermediate,
        } = shape;
        if heads == 0 || width % heads != 0 {
            return Err(EmbedError::Model("width must divide into heads".into()));
        }
        let mut tensors = read_safetensors(bytes)?;
        let mut take = |name: &str, len: Option<usize>| {
            let tensor = tensors
                .remove(name)
                .ok_or_else(|| EmbedError::Model(format!("missing tensor {name}")))?;
            match len {
                Some(len) if tensor.len() != len => Err(EmbedError::Model(format!(
                    "tensor {name} has {} values, expected {len}",
                    tensor.len()
                ))),
                _ => Ok(tensor),
            }
        };
        let words = take("embeddings.word_embeddings.weight", None)?;
        let positions = take("embeddings.position_embeddings.weight", None)?;
        let token_type = take("embeddings.token_type_embeddings.weight", None)?;
        if words.len() % width != 0 || positions.len() % width != 0 || token_type.len() < width {
            return Err(EmbedError::Model(
                "embedding tables do not fit the width".into(),
            ));
        }
        let embedding_norm = Norm {
            weight: take("embeddings.LayerNorm.weight", Some(width))?,
            bias: take("embeddings.LayerNorm.bias", Some(width))?,
        };
        let mut built = Vec::new();
        for index in 0..layers {
            let prefix = format!("encoder.layer.{index}");
            let mut linear =
                |name: &str, inputs: usize, outputs: usize| -> Result<Linear, EmbedError> {
                    Ok(Linear {
                        weight: take(&format!("{prefix}.{name}.weight"), Some(inputs * outputs))?,
                        bias: take(&format!("{prefix}.{name}.bias"), Some(outputs))?,
                        inputs,
                    })
                };
            let query = linear("attention.self.query", width, width)?;
            let key = linear("attention.self.key", width, width)?;
            let value = linear("attention.self.value", width, width)?;
            let attention_out = linear("attention.output.dense", width, width)?;
            let intermediate_layer = linear("intermediate.dense", width, intermediate)?;
            let output = linear("output.dense", intermediate, width)?;
            let mut norm = |name: &str| -> Result<Norm, EmbedError> {
                Ok(Norm {
                    weight: take(&format!("{prefix}.{name}.weight"), Some(width))?,
                    bias: take(&format!("{prefix}.{name}.bias"), Some(width))?,
                })
            };
            built.push(Layer {
                query,
                key,
                value,
                attention_out,
                attention_norm: norm("attention.output.LayerNorm")?,
                intermediate: intermediate_layer,
                output,
                output_norm: norm("output.LayerNorm")?,
            });
        }
        let max_positions = positions.len() / width;
        Ok(Bert {
            words,
            positions,
            token_type,
            embedding_norm,
            layers: built,
            width,
            heads,
            max_positions,
        })
    }

    /// Longest sequence the position table covers.
    pub(crate) fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The mean-pooled, L2-normalised embedding of token `ids` (special tokens included).
    pub(crate) fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let width = self.width;
        let tokens = ids.len().min(self.max_positions);
        let vocabulary = self.words.len() / width;
        let mut x = vec![0f32; tokens * width];
        for (position, (&id, row)) in ids.iter().zip(x.chunks_exact_mut(width)).enumerate() {
            let id = (id as usize).min(vocabulary - 1);
            let word = &self.words[id * width..(id + 1) * width];
            let place = &self.positions[position * width..(position + 1) * width];
            for i in 0..width {
                row[i] = word[i] + place[i] + self.token_type[i];
            }
        }
        self.embedding_norm.apply(&mut x);
        let head_width = width / self.heads;
        let scale = 1.0 / (head_width as f32).sqrt();
        for layer in &self.layers {
            let (q, k, v) = (
                layer.query.apply(&x),
                layer.key.apply(&x),
                layer.value.apply(&x),
            );
            let mut context = vec![0f32; tokens * width];
            let mut weights = vec![0f32; tokens];
            for head in 0..self.heads {
                let span = head * head_width..(head + 1) * head_width;
                for i in 0..tokens {
                    let qi = &q[i * width..][span.clone()];
                    let mut max = f32::NEG_INFINITY;
                    for (j, weight) in weights.iter_mut().enumerate() {
                        *weight = dot(qi, &k[j * width..][span.clone()]) * scale;
                        max = max.max(*weight);
                    }
                    let mut sum = 0f32;
                    for weight in weights.iter_mut() {
                        *weight = (*weight - max).exp();
                        sum += *weight;
                    }
                    let out = &mut context[i * width..][span.clone()];
                    for (j, weight) in weights.iter().enumerate() {
                        let vj = &v[j * width..][span.clone()];
                        for d in 0..head_width {
                            out[d] += weight / sum * vj[d];
                        }
                    }
                }
            }
            let attended = layer.attention_out.apply(&context);
            for (value, add) in x.iter_mut().zip(&attended) {
                *value += add;
            }
            layer.attention_norm.apply(&mut x);
            let mut hidden = layer.intermediate.apply(&x);
            for value in hidden.iter_mut() {
                *value = gelu(*value);
            }
            let out = layer.output.apply(&hidden);
            for (value, add) in x.iter_mut().zip(&out) {
                *value += add;
            }
            layer.output_norm.apply(&mut x);
        }
        let mut pooled = vec![0f32; width];
        for row in x.chunks_exact(width) {
            for (sum, value) in pooled.iter_mut().zip(row) {
                *sum += value;
            }
        }
        let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        pooled.iter_mut().for_each(|v| *v /= norm);
        pooled
    }
}

/// GELU with the error function (BERT's `gelu`), erf by Abramowitz–Stegun 7.1.26.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

fn erf(x: f32) -> f32 {
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    sign * (1.0 - poly * (-x * x).exp())
}

/// Cosine similarity of two L2-normalised vectors.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_dot() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 1e-5);
        assert!((erf(-1.0) + 0.842_700_8).abs() < 1e-5);
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|k| (0..19).map(|i| (i * k) as f32).collect())
            .collect();
        let four = dot4([&rows[0], &rows[1], &rows[2], &rows[3]], &a);
        for k in 0..4 {
            assert_eq!(four[k], dot(&rows[k], &a));
        }
    }

    #[test]
    fn blocked_rows_match_one_row_at_a_time() {
        let inputs = 21;
        let outputs = 5;
        let linear = Linear {
            weight: (0..inputs * outputs)
                .map(|i| (i % 7) as f32 - 3.0)
                .collect(),
            bias: (0..outputs).map(|o| o as f32).collect(),
            inputs,
        };
        // 7 rows: one block of four and three rows after it.
        let x: Vec<f32> = (0..7 * inputs)
            .map(|i| ((i * 5) % 11) as f32 - 5.0)
            .collect();
        let y = linear.apply(&x);
        for (row, out) in x.chunks_exact(inputs).zip(y.chunks_exact(outputs)) {
            for (o, value) in out.iter().enumerate() {
                let w = &linear.weight[o * inputs..(o + 1) * inputs];
                assert_eq!(*value, dot(row, w) + linear.bias[o]);
            }
        }
    }
}
