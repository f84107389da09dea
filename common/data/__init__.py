"""Data: the datasets (CIFAR, SVHN, ImageNet16-120, the synthetic set, your own class folders,
ImageNet folders), read through an allow-list unpickler, and the loaders that bring their batches
to the device (GPU-resident, or worker processes and on-device JPEG decoding)."""
