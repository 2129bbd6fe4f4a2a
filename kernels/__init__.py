"""Interchangeable LSTM kernels with one weight layout (imported as lstmcore.kernels)."""
