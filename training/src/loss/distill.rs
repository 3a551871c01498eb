//! Distillation from the model a fine-tune started from: the original network (the teacher,
//! fixed) sees the same batch, and the student is pulled towards its face probabilities on
//! every prior and towards its boxes and landmarks where the teacher sees a face. That keeps
//! what the original model finds (e.g. small faces) while the labels of a few new images teach
//! the rest.

use tch::{Kind, Reduction, Tensor};

/// Face probability per prior `[N, P]` from the raw `conf` of a training forward pass: two
/// logit columns (softmax, column 1) or one sigmoid logit.
pub fn face_probability(conf: &Tensor) -> Tensor {
    if conf.size().last() == Some(&1) {
        conf.sigmoid().squeeze_dim(-1)
    } else {
        conf.softmax(-1, Kind::Float).select(-1, 1)
    }
}

/// Teacher probabilities above this mark the priors whose boxes and landmarks are distilled.
pub const TEACHER_FACE: f64 = 0.5;

/// The distillation term of student outputs against teacher outputs (raw training outputs of
/// both: `loc [N,P,4]`, `conf [N,P,2|1]`, `landmarks [N,P,10]`): binary KL divergence of the face
/// probability summed over all priors, plus smooth-L1 of box and landmark offsets over the
/// priors the teacher calls faces, all divided by the number of those priors (at least 1), as
/// the detection loss is divided by its positives.
pub fn distillation(
    student: &crate::model::Outputs<Tensor>,
    teacher: &crate::model::Outputs<Tensor>,
) -> Tensor {
    let eps = 1e-6;
    let p = face_probability(&teacher.conf).detach();
    let q = face_probability(&student.conf).clamp(eps, 1.0 - eps);
    let pc = p.clamp(eps, 1.0 - eps);
    let (p_back, pc_back, q_back): (Tensor, Tensor, Tensor) = (1.0 - &p, 1.0 - &pc, 1.0 - &q);
    let kl = &p * (&pc / &q).log() + p_back * (pc_back / q_back).log();
    let faces = p.ge(TEACHER_FACE);
    let n = faces.sum(Kind::Float).clamp_min(1.0);
    let mask = faces.unsqueeze(-1).to_kind(Kind::Float);
    let regress = |s: &Tensor, t: &Tensor| {
        (s.smooth_l1_loss(&t.detach(), Reduction::None, 1.0) * &mask).sum(Kind::Float)
    };
    (kl.sum(Kind::Float)
        + regress(&student.loc, &teacher.loc)
        + regress(&student.landmarks, &teacher.landmarks))
        / n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outputs;

    fn outputs(face_logit: f32, loc: f32) -> Outputs<Tensor> {
        // One image, one prior; two logit columns [0, x]: face probability σ(x).
        Outputs {
            loc: Tensor::from_slice(&[loc, 0.0, 0.0, 0.0]).view([1, 1, 4]),
            conf: Tensor::from_slice(&[0.0, face_logit]).view([1, 1, 2]),
            landmarks: Tensor::zeros([1, 1, 10], tch::kind::FLOAT_CPU),
            first_stage: None,
        }
    }

    #[test]
    fn a_student_equal_to_its_teacher_costs_nothing() {
        let t = outputs(2.0, 0.3);
        let d = distillation(&outputs(2.0, 0.3), &t).double_value(&[]);
        assert!(d.abs() < 1e-6, "{d}");
    }

    #[test]
    fn by_hand_for_one_prior() {
        // Teacher: logit ln 3 → p = 0.75 (a face: box distilled); student: logit 0 → q = 0.5.
        // KL = 0.75·ln(0.75/0.5) + 0.25·ln(0.25/0.5) = 0.75·0.405465 − 0.25·0.693147
        //    = 0.304099 − 0.173287 = 0.130812.
        // Box: student 0.0 vs teacher 0.5 on one coordinate → smooth-L1 (β 1) = 0.5·0.5² = 0.125.
        // One teacher face: divided by 1.
        let d = distillation(&outputs(0.0, 0.0), &outputs(3f32.ln(), 0.5)).double_value(&[]);
        assert!((d - (0.130812 + 0.125)).abs() < 1e-5, "{d}");
        // Teacher p = 0.25 (not a face): the box is not distilled; divided by max(0, 1) = 1.
        // KL = 0.25·ln(0.5) + 0.75·ln(1.5) = −0.173287 + 0.304099 = 0.130812.
        let d = distillation(&outputs(0.0, 0.0), &outputs(-(3f32.ln()), 0.5)).double_value(&[]);
        assert!((d - 0.130812).abs() < 1e-5, "{d}");
    }
}
