//! Combining the watermarks and idleness of a task's input channels.

use brisk_core::{Watermark, WatermarkStatus};

/// Combines the watermarks of a task's input channels (Flink's `StatusWatermarkValve`): the
/// output is the minimum over active channels, emitted only when it advances; when every
/// channel is idle the output turns idle.
#[derive(Debug)]
pub struct WatermarkValve {
    watermarks: Vec<i64>,
    idle: Vec<bool>,
    last_emitted: i64,
    output_idle: bool,
}

/// What the valve says after an input change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ValveOutput {
    /// A new combined watermark.
    pub watermark: Option<Watermark>,
    /// A change of the combined status.
    pub status: Option<WatermarkStatus>,
}

impl WatermarkValve {
    /// A valve over `channels` inputs, all active at the minimum watermark.
    pub fn new(channels: usize) -> Self {
        WatermarkValve {
            watermarks: vec![i64::MIN; channels],
            idle: vec![false; channels],
            last_emitted: i64::MIN,
            output_idle: false,
        }
    }

    /// Channel `channel` reached `watermark` (watermarks never go back per channel).
    pub fn input_watermark(&mut self, channel: usize, watermark: Watermark) -> ValveOutput {
        let slot = &mut self.watermarks[channel];
        if watermark.0 <= *slot {
            return ValveOutput::default();
        }
        *slot = watermark.0;
        let mut out = ValveOutput::default();
        if self.idle[channel] {
            // A watermark from an idle channel makes it active again.
            self.idle[channel] = false;
            if self.output_idle {
                self.output_idle = false;
                out.status = Some(WatermarkStatus::Active);
            }
        }
        out.watermark = self.advance();
        out
    }

    /// Channel `channel` became idle or active.
    pub fn input_status(&mut self, channel: usize, status: WatermarkStatus) -> ValveOutput {
        let idle = status == WatermarkStatus::Idle;
        if self.idle[channel] == idle {
            return ValveOutput::default();
        }
        self.idle[channel] = idle;
        let mut out = ValveOutput::default();
        let all_idle = self.idle.iter().all(|&i| i);
        if all_idle != self.output_idle {
            self.output_idle = all_idle;
            out.status = Some(status);
        }
        if !all_idle {
            // Excluding an idle channel may release the others' watermark.
            out.watermark = self.advance();
        }
        out
    }

    fn advance(&mut self) -> Option<Watermark> {
        let min = self.watermarks.iter().zip(&self.idle).filter(|(_, idle)| !**idle).map(|(w, _)| *w).min()?;
        if min > self.last_emitted {
            self.last_emitted = min;
            Some(Watermark(min))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valve_emits_minimum_of_active_channels_once() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, Watermark(10)).watermark, None);
        assert_eq!(v.input_watermark(1, Watermark(5)).watermark, Some(Watermark(5)));
        assert_eq!(v.input_watermark(1, Watermark(3)).watermark, None, "never backwards");
        assert_eq!(v.input_watermark(1, Watermark(20)).watermark, Some(Watermark(10)));
    }

    #[test]
    fn idle_channels_do_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(10));
        let out = v.input_status(1, WatermarkStatus::Idle);
        assert_eq!(out.watermark, Some(Watermark(10)));
        assert_eq!(out.status, None, "one channel is still active");
        let out = v.input_status(0, WatermarkStatus::Idle);
        assert_eq!(out.status, Some(WatermarkStatus::Idle));
        let out = v.input_watermark(1, Watermark(30));
        assert_eq!(out.status, Some(WatermarkStatus::Active));
        assert_eq!(out.watermark, Some(Watermark(30)));
    }
}
