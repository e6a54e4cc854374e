//! Capacity planning: hardware and workload profiles (tuning/) and a machine calibration
//! (`tandem-bench calibrate`) turned into a plan (`tandem plan`).

pub mod calibration;
