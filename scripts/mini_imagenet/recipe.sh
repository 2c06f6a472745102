# ResNet-12 on mini-ImageNet: the seed commands exactly (see scripts/seed_stages.sh)
DATASET=mini_imagenet
MODEL=ResNet12
